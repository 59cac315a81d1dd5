"""Who is calling, and within which limits: tokens, API keys, request limits, key quotas."""
