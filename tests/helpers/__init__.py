"""Plain functions and constants that tests share; the conftest files hold fixtures only."""
