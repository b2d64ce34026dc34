"""External sources (weather, database, REST, GraphQL, real-time feeds) and their registry."""
