"""Site configuration: YAML files validated into immutable models."""
