"""Pure registry logic: name rules, status derivation, the fold of validation status events. No I/O."""
