"""The LiveKit voice front door: the LLM step of a LiveKit AgentSession is the LangGraph graph."""
