"""The LangGraph state machine: route, retrieve, grade, generate. Knows nothing of LiveKit."""
