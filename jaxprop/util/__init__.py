"""Small helpers that know nothing of jaxprop: atomic file writing and figure saving
(:mod:`.files`), and the suggestion for a misspelt name (:mod:`.names`).

May import: nothing of jaxprop.
"""
