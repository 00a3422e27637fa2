"""Recipes: loading with line marks, interpolation, extends, the schema, validation."""
from clinseek.recipe.load import LoadedRecipe, load_recipe, load_site

__all__ = ["LoadedRecipe", "load_recipe", "load_site"]
