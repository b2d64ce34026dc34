"""Everything that fetches knowledge. Knows nothing of LangGraph or LiveKit."""
