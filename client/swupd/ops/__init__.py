"""The commands' orchestration: metadata, objects and transactions put together."""
