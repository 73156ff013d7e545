"""landcloud (国土资源云): a provincial land-resources cloud — one map, one way in, one gate out."""

__version__ = "0.1.0"
