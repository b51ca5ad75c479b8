"""Packaging and deploying paylambda to AWS (never part of the Lambda bundle)."""
