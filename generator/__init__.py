"""The values generator: `python -m generator {values,validate,queue,rbac,schema}`."""
