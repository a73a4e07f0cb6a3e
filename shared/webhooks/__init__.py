"""Customer webhooks: the subscriptions an account registers for its jobs' events."""
