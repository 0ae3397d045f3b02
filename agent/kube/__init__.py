"""The Kubernetes side: the API client, watch streams, the leader-election Lease."""
