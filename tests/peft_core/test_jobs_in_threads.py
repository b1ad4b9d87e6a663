"""Jobs in parallel threads (the pipeline's threads runner) give the results they give alone:
torch's random state is one per process, so a job holds it from its seeding to its end."""

import threading
import time

import pytest
import torch
from safetensors.torch import load_file

from peft_core import adapter_jobs
from peft_core.configs import AdapterConfig, TrainConfig
from peft_core.task_specs import get_task

from tests.helpers.core import sentiment_splits

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = get_task("demo_sentiment")


def _train(backbone, seed: int, out, pause: float = 0.0) -> dict[str, torch.Tensor]:
    """The saved adapter and head of one small training job."""
    cfg = TrainConfig(epochs=2, batch_size=4, eval_batch_size=32, max_length=16, learning_rate=1e-2, seed=seed)
    adapter_jobs.train_adapter(backbone, SPEC, sentiment_splits(n_train=48, n_eval=8),
                          AdapterConfig(reduction_factor=4), cfg, out,
                          on_step=lambda *_: time.sleep(pause))  # a pause hands the other thread the GIL
    return _saved(out)


def _saved(folder) -> dict[str, torch.Tensor]:
    return {f"{path.name}/{k}": v for path in sorted(folder.glob("*.safetensors")) for k, v in load_file(path).items()}


def test_two_jobs_in_threads_train_the_weights_each_trains_alone(tiny_backbone, tmp_path):
    # Built up front: the tiny random backbones seed torch to initialise themselves (a loaded one does not
    # draw from torch's random state: checked for MiniLM).
    backbones = {seed: tiny_backbone("bert") for seed in (3, 4)}
    alone = {seed: _train(backbones[seed], seed, tmp_path / f"alone-{seed}") for seed in (3, 4)}
    together: dict[int, dict] = {}
    errors: list[BaseException] = []

    def job(seed):
        try:
            together[seed] = _train(backbones[seed], seed, tmp_path / f"together-{seed}", pause=0.002)
        except BaseException as exc:  # surfaced below: an exception in a thread would vanish
            errors.append(exc)

    threads = [threading.Thread(target=job, args=(seed,)) for seed in (3, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for seed in (3, 4):
        assert list(together[seed]) == list(alone[seed])
        for name, value in alone[seed].items():
            assert torch.equal(together[seed][name], value), f"seed {seed}: {name} differs from the job run alone"
