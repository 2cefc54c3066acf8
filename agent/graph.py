"""The LangGraph workflow: prepare → (describe) → retrieve → rerank → (reflect) → decide.

The graph is the only place that knows the order of the steps.
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from vplink.agent.nodes import LinkerNodes
from vplink.agent.state import LinkState


def build_graph(nodes: LinkerNodes, checkpointer=None):
    """Compile the workflow over the given nodes; a checkpointer makes every step durable."""
    graph = StateGraph(LinkState)
    graph.add_node("prepare", nodes.prepare)
    graph.add_node("describe", nodes.describe)
    graph.add_node("retrieve", nodes.retrieve)
    graph.add_node("rerank", nodes.rerank)
    graph.add_node("reflect", nodes.reflect)
    graph.add_node("decide", nodes.decide)
    graph.add_edge(START, "prepare")
    # Routing: the model is asked only when the evidence leaves the answer open (see needs_model).
    graph.add_conditional_edges("prepare", lambda s: "describe" if nodes.needs_model(s) else "retrieve",
                                {"describe": "describe", "retrieve": "retrieve"})
    graph.add_edge("describe", "retrieve")
    graph.add_edge("retrieve", "rerank")
    # Close calls go to the model once more; `reflections` in the state bounds the loop.
    graph.add_conditional_edges("rerank", lambda s: "reflect" if nodes.needs_reflection(s) else "decide",
                                {"reflect": "reflect", "decide": "decide"})
    graph.add_edge("reflect", "decide")
    graph.add_edge("decide", END)
    return graph.compile(checkpointer=checkpointer)
