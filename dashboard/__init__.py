"""The Streamlit dashboard over the results store (`harness dashboard`).

Pages render; harness.ranking decides. `data` reads the dataset, `queries`
holds the SQL the pages show, `charts` builds the figures, `session` is the
Streamlit glue (results root, caching, sidebar).
"""
