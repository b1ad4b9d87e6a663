"""A tiny pipeline config for the flow and integration tests."""

from __future__ import annotations

import yaml

# what the session's finished tiny run (the `fitted` fixture of tests/flows) adds to write_tiny_config's
FITTED_SETTINGS = {"sources": ["demo_sentiment", "demo_similarity"],
                   "methods": ["adapter", "scalearn", "hyperformer_plus_plus"]}


def write_tiny_config(folder, backbone_dir, **changes) -> tuple:
    """Write a small pipeline config into `folder` and return (path, home)."""
    cfg = {
        "name": "flowtest",
        "backbone": str(backbone_dir),
        "home": str(folder / "home"),
        "data": {"source": "demo", "max_train": 48, "max_eval": 24},
        "sources": ["demo_sentiment", "demo_nli"],
        "targets": ["demo_lowres"],
        "methods": ["adapter", "scalearn", "average"],
        "adapter": {"reduction_factor": 4},
        "training": {
            "sources": {"epochs": 1, "batch_size": 16, "max_length": 24, "learning_rate": 0.001},
            "targets": {"epochs": 1, "batch_size": 16, "max_length": 24, "learning_rate": 0.001},
            "multitask": {"epochs": 1, "batch_size": 16, "max_length": 24},
        },
        "runner": {"kind": "threads", "workers": 2},
    }
    for key, value in changes.items():
        cfg[key] = value
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, folder / "home"
