"""The vplink agent: visual prompts, evidence tools, the model client, the LangGraph workflow, the Linker."""
