"""Dataset adapters, metrics, the evaluation harness and its reports."""
