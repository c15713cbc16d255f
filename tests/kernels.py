"""The notebook kernel the tests use is this project's own Python: see :mod:`sslteach.execute` (kept here so the
test helpers can ``import kernels``)."""
from sslteach.execute import env_for, private_kernelspec, write_kernelspec  # noqa: F401
