-- Links between the Markdown sources become links between the HTML pages (mla.md#x -> mla.html#x).
function Link(el)
  el.target = el.target:gsub("^([%w%-_]+)%.md(#?.*)$", "%1.html%2")
  return el
end
