"""Visual evidence about the marked region from small, local tools: geometry, faces, labels, text."""

from vplink.agent.evidence.collect import (ALL_TOOLS, EvidenceToolError, EvidenceTools, ToolRun, VisualEvidence,
                                    collect_evidence, default_tools)

__all__ = ["ALL_TOOLS", "EvidenceToolError", "EvidenceTools", "ToolRun", "VisualEvidence", "collect_evidence",
           "default_tools"]
