"""racepub: publish a live race from PostgreSQL to a CDN as static objects."""

__version__ = "0.1.0"
