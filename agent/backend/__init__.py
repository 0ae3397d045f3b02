"""The W&B side: the GraphQL transport and the operations the agent sends."""
