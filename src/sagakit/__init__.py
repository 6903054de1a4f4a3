"""sagakit: the Saga pattern for Python microservices over Kafka and PostgreSQL."""

__version__ = "0.1.0"

__all__ = ["__version__"]
