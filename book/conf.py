"""Sphinx configuration of the sslteach book (built by ``make book``: see book/build.py).

Offline by design: MathJax is served from the book itself (sphinx-mathjax-offline), the theme is a Python package
(sphinx-book-theme), no page loads anything from a CDN. The notebooks arrive already executed: myst-nb only renders.
"""
project = "sslteach"
author = "the sslteach authors"
copyright = "sslteach authors, MIT licence"
html_title = "sslteach: deep semi-supervised learning, one paper at a time"

extensions = ["myst_nb", "sphinx-mathjax-offline"]
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = "off"            # executed by book/build.py (papermill), with the run cache
nb_merge_streams = True
nb_output_stderr = "remove-warn"     # warnings stay out of the pages, errors do not exist (the build checks)
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "**.ipynb_checkpoints", "build.py", "conf.py",
                    "_generated"]  # included into index.md, not pages of their own (their links are relative to it)
suppress_warnings = ["mystnb.unknown_mime_type", "myst.header"]

html_theme = "sphinx_book_theme"
html_static_path = ["_static"]
html_css_files = ["sslteach.css"]
html_theme_options = {
    "repository_url": "https://github.com/sslteach/sslteach",
    "repository_branch": "main",
    "path_to_docs": "",
    "use_repository_button": True,
    "launch_buttons": {"binderhub_url": "https://mybinder.org", "colab_url": "https://colab.research.google.com",
                       "notebook_interface": "jupyterlab"},
    "show_toc_level": 2,
    "home_page_in_toc": True,
}
html_last_updated_fmt = "%Y-%m-%d"
