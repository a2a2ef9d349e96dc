"""The HTTP layer every client shares: retries, rate limits, batching."""
