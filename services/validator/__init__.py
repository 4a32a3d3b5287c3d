"""The validator: static checks of an adapter against its base model, from its config and weights header only."""
