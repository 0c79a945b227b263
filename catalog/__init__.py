"""Keep a SQL catalog of a media server's libraries."""

__version__ = "0.1.0"
