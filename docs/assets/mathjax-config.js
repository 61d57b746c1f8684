// MathJax 3 for pymdownx.arithmatex (generic mode): typeset only what arithmatex marked, as SVG,
// from the copy of MathJax that ships with the site (no network needed).
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true,
  },
  options: {
    ignoreHtmlClass: ".*|",
    processHtmlClass: "arithmatex",
  },
  svg: { fontCache: "global" },
};
