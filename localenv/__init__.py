"""The local environment: a real Kubernetes control plane and Helm built from pinned upstream
Go modules (``localenv.tools``), run as plain processes on loopback (``localenv.cluster``),
plus the W&B launch-API emulator (``localenv.wandb_emulator``). CLI: ``python -m localenv``."""
