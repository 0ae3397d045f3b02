"""The slim W&B launch agent: pops launch-queue items and runs them on Kubernetes."""

__version__ = "0.1.0"
