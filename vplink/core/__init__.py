"""The lowest layer every package shares: errors, the shared records, the settings and what a run ran on (commit,
CPU). It imports none of the other packages."""
