"""Events -> state, as pure folds: portfolio, errors, breakers, health, validation."""
