"""The lowest layer every package shares: errors, the shared records and the settings. It imports none of them."""
