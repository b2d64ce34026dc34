"""The graph's nodes, one module each. Only `generate` produces text that is spoken."""
