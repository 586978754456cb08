-- A busted output handler: busted's usual terminal report, then the plain
-- closing line "N passed, N failed" (errors count as failures).
return function(options)
  local busted = require "busted"
  local handler = require("busted.outputHandlers.utfTerminal")(options)
  busted.subscribe({ "suite", "end" }, function()
    local failed = #handler.failures + #handler.errors
    io.write(string.format("\n%d passed, %d failed\n", #handler.successes, failed))
    io.flush()
    return nil, true
  end)
  return handler
end
