"""The controller: the agent loop (pop -> create -> ack, reconcile objects -> W&B) and workload status."""
