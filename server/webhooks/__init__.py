"""Signed webhooks for integrators: an outbox table filled in the caller's transaction
(`enqueue`) and delivered by the job runner (`WebhookJobs`). See docs/api.md#webhooks."""
