"""Person tracking: PHALP association, track lifecycle and predictors."""
