"""voicerag: a voice agent that answers from a company's knowledge base and live systems."""

__version__ = "0.1.0"
