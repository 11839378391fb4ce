"""One module per dashboard page; each runs as a Streamlit page script (see dashboard/app.py).

Not named pages/: Streamlit treats a pages/ folder next to the entry point as a v1 multipage
app, and a browser opening a page URL directly then gets that folder's page list and a blank page."""
