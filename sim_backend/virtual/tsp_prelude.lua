-- The TSP world of the virtual Keithley 2600B, built inside a sandboxed Lua state.
-- Run once, with the Python callbacks table `py`; returns run(chunk) and the environment.
-- Manual: Keithley Series 2600B Reference Manual 2600BS-901-01, TSP command reference.
local py = ...
local sethook, load, pcall, setmetatable = debug.sethook, load, pcall, setmetatable
local type, error, tostring, select, floor = type, error, tostring, select, math.floor
local tconcat = table.concat

local env = {
  string = string, math = math, table = table, pairs = pairs, ipairs = ipairs,
  tonumber = tonumber, tostring = tostring, type = type, select = select, error = error,
  pcall = pcall, next = next, unpack = table.unpack, assert = assert,
}
env._G = env

-- An attribute object: fields from `spec` ({lo, hi} numeric ranges, or a function for a
-- read-only value); anything else, or a value outside the range, is a runtime error.
local function attrobj(path, spec, values, children)
  local obj = children or {}
  return setmetatable(obj, {
    __index = function(_, k)
      local s = spec[k]
      if type(s) == "function" then return s() end
      if s ~= nil then return values[k] end
      error(path .. "." .. tostring(k) .. " does not exist", 2)
    end,
    __newindex = function(_, k, v)
      local s = spec[k]
      if type(s) ~= "table" then error("cannot set " .. path .. "." .. tostring(k), 2) end
      if type(v) ~= "number" then error("number expected for " .. path .. "." .. k, 2) end
      if v < s[1] or v > s[2] then
        error("parameter out of range: " .. path .. "." .. k .. " = " .. tostring(v), 2)
      end
      values[k] = v
      if s.on_set then s.on_set(v) end
    end,
  })
end

local function newbuffer(path)
  local data = {readings = {}, sourcevalues = {}, n = 0}
  local values = {appendmode = 0, collectsourcevalues = 0, collecttimestamps = 0}
  local b = attrobj(path, {
    n = function() return data.n end,
    readings = function() return data.readings end,
    sourcevalues = function() return data.sourcevalues end,
    appendmode = {0, 1}, collectsourcevalues = {0, 1}, collecttimestamps = {0, 1},
  }, values, {
    clear = function() data.readings, data.sourcevalues, data.n = {}, {}, 0 end,
  })
  data.append = function(currents, volts)
    if values.appendmode == 0 then data.readings, data.sourcevalues, data.n = {}, {}, 0 end
    for i = 1, #currents do
      data.n = data.n + 1
      data.readings[data.n] = currents[i]
      data.sourcevalues[data.n] = volts[i]
    end
  end
  return b, data
end

local function newsmu(name)
  local s = {}
  local src = {output = 0, func = 1, levelv = 0, leveli = 0, limiti = 1e-4, limitv = 20,
               rangev = 0.1, autorangev = 1, rangei = 1e-4, autorangei = 1, delay = 0,
               offmode = 0}
  local meas = {nplc = 1, autozero = 2, delay = -1, rangei = 1e-4, autorangei = 1,
                rangev = 1, autorangev = 1,
                count = 1, interval = 0}
  local filt = {count = 1, enable = 0, type = 1}
  local trig = {count = 1, measure_action = 0, source_action = 0}
  local endp = {action = 1, stimulus = 0}
  local ends = {action = 1}
  local tsrc = {limiti = 1e-4, list = {}}
  local buf1, data1 = newbuffer(name .. ".nvbuffer1")
  local buf2, data2 = newbuffer(name .. ".nvbuffer2")
  local measure_into = nil

  local function check_range(v)
    if src.autorangev == 0 and math.abs(v) > src.rangev * 1.01 then
      error("level " .. tostring(v) .. " V above source range " .. tostring(src.rangev), 3)
    end
  end
  local function navg() return filt.enable == 1 and floor(filt.count) or 1 end
  local function measure_one()
    local got = py.source({src.levelv}, src.delay, meas.nplc, navg(), meas.autozero,
                          meas.delay, src.limiti, src.output, false)
    return got[1]
  end

  s.OUTPUT_OFF, s.OUTPUT_ON, s.OUTPUT_HIGH_Z = 0, 1, 2
  s.OUTPUT_DCAMPS, s.OUTPUT_DCVOLTS = 0, 1
  s.FILTER_MOVING_AVG, s.FILTER_REPEAT_AVG, s.FILTER_MEDIAN = 0, 1, 2
  s.FILTER_OFF, s.FILTER_ON = 0, 1
  s.AUTOZERO_OFF, s.AUTOZERO_ONCE, s.AUTOZERO_AUTO = 0, 1, 2
  s.ENABLE, s.DISABLE = 1, 0
  s.SOURCE_IDLE, s.SOURCE_HOLD = 0, 1
  s.DELAY_OFF, s.DELAY_AUTO = 0, -1
  s.AUTORANGE_OFF, s.AUTORANGE_ON = 0, 1
  s.SENSE_LOCAL, s.SENSE_REMOTE, s.SENSE_CALA = 0, 1, 3
  s.sense = 0
  s.nvbuffer1, s.nvbuffer2 = buf1, buf2

  s.source = attrobj(name .. ".source", {
    output = {0, 2}, func = {0, 1}, levelv = {-40, 40, on_set = check_range},
    leveli = {-1.5, 1.5}, limiti = {1e-9, 1.5}, limitv = {0.02, 40},
    rangev = {0, 40, on_set = function() src.autorangev = 0 end}, autorangev = {0, 1},
    rangei = {0, 1.5, on_set = function() src.autorangei = 0 end}, autorangei = {0, 1},
    delay = {-1, 1e4}, offmode = {0, 2},
  }, src)
  s.measure = attrobj(name .. ".measure", {
    nplc = {0.001, 25}, autozero = {0, 2}, delay = {-1, 1e4}, rangei = {1e-9, 1.5},
    autorangei = {0, 2}, count = {1, 60000}, interval = {0, 1}, rangev = {0, 40},
    autorangev = {0, 1},
    filter = function() return s._filter end,
  }, meas, {
    i = function(b)
      local r, vs = {}, {}
      for k = 1, floor(meas.count) do r[k] = measure_one() vs[k] = src.levelv end
      if b ~= nil then local d = (b == buf1) and data1 or data2 d.append(r, vs) end
      return r[#r]
    end,
    v = function() return src.output == 1 and src.levelv or 0 end,
    iv = function() local i = measure_one() return i, src.levelv end,
    r = function() local i = measure_one() return src.levelv / i end,
  })
  s._filter = attrobj(name .. ".measure.filter", {count = {1, 100}, enable = {0, 1},
                                                  type = {0, 2}}, filt)
  local tmeasure = attrobj(name .. ".trigger.measure", {action = {0, 2}},
                           setmetatable({}, {__index = function(_, k) return trig["measure_" .. k] end,
                                             __newindex = function(_, k, v) trig["measure_" .. k] = v end}),
                           {i = function(b) measure_into = (b == buf1) and data1 or data2 end,
                            v = function(b) measure_into = (b == buf1) and data1 or data2 end})
  local tsource = attrobj(name .. ".trigger.source", {action = {0, 1}, limiti = {1e-9, 1.5}},
                          setmetatable({}, {__index = function(_, k)
                                              if k == "action" then return trig.source_action end
                                              return tsrc[k] end,
                                            __newindex = function(_, k, v)
                                              if k == "action" then trig.source_action = v
                                              else tsrc[k] = v end end}),
                          {listv = function(t)
                             if type(t) ~= "table" then error("listv needs a table", 2) end
                             local l = {}
                             for k = 1, #t do check_range(t[k]) ; l[k] = t[k] end
                             tsrc.list = l
                           end,
                           linearv = function(a, b, n)
                             if n < 2 then error("linearv needs at least 2 points", 2) end
                             local l = {}
                             for k = 1, n do l[k] = a + (b - a) * (k - 1) / (n - 1) end
                             tsrc.list = l
                           end})
  s.trigger = attrobj(name .. ".trigger", {count = {1, 100000},
    measure = function() return tmeasure end, source = function() return tsource end,
    endpulse = function() return s._endpulse end, endsweep = function() return s._endsweep end,
  }, trig, {
    initiate = function()
      local n = floor(trig.count)
      if trig.source_action ~= 1 or #tsrc.list < 1 then
        error("trigger model has no source sweep configured", 2)
      end
      local volts = {}
      for k = 1, n do volts[k] = tsrc.list[(k - 1) % #tsrc.list + 1] end
      local idle = endp.action == 0 and endp.stimulus == 0
      local got = py.source(volts, src.delay, meas.nplc, navg(), meas.autozero, meas.delay,
                            tsrc.limiti, src.output, idle)
      if trig.measure_action == 1 and measure_into ~= nil then measure_into.append(got, volts) end
    end,
  })
  s._endpulse = attrobj(name .. ".trigger.endpulse", {action = {0, 1}, stimulus = {0, 1e4}}, endp)
  s._endsweep = attrobj(name .. ".trigger.endsweep", {action = {0, 1}}, ends)
  s.reset = function()
    src.output, src.levelv, src.limiti, src.delay, src.rangev, src.autorangev = 0, 0, 1e-4, 0, 0.1, 1
    meas.nplc, meas.autozero, meas.delay, meas.count = 1, 2, -1, 1
    filt.count, filt.enable, filt.type = 1, 0, 1
    trig.count, trig.measure_action, trig.source_action = 1, 0, 0
    endp.action, endp.stimulus, ends.action = 1, 0, 1
    tsrc.limiti, tsrc.list = 1e-4, {}
    buf1.clear() buf2.clear()
  end
  return s
end

env.smua = newsmu("smua")
env.smub = newsmu("smub")
local fmtv = {ascii = 1, real32 = 32, real64 = 64, data = 1, asciiprecision = 6, byteorder = 1}
env.format = attrobj("format", {data = {1, 64}, asciiprecision = {1, 16}, byteorder = {0, 1}},
                     fmtv, {ASCII = 1, REAL32 = 32, REAL64 = 64, REAL = 64, NORMAL = 1,
                            SWAPPED = 0, BIGENDIAN = 1, LITTLEENDIAN = 0, NETWORK = 1})
env.localnode = attrobj("localnode", {model = function() return py.model end,
                                      linefreq = function() return py.linefreq end,
                                      description = function() return py.idn end}, {})
env.errorqueue = {
  next = function() return py.next_error() end,
  clear = function() py.clear_errors() end,
}
setmetatable(env.errorqueue, {__index = function(_, k)
  if k == "count" then return py.error_count() end end})

local function fmtnum(v)
  if type(v) ~= "number" then return tostring(v) end
  return string.format("%." .. floor(fmtv.asciiprecision - 1) .. "e", v)
end
env.print = function(...)
  local parts = {}
  for k = 1, select("#", ...) do parts[k] = fmtnum((select(k, ...))) end
  py.emit(tconcat(parts, "\t") .. "\n")
end
env.printbuffer = function(first, last, ...)
  local bufs = {...}
  if #bufs < 1 then error("printbuffer needs a buffer", 2) end
  local vals = {}
  for k = floor(first), floor(last) do
    for _, b in ipairs(bufs) do
      local v = b[k]
      if v == nil then error("buffer index " .. k .. " out of range", 2) end
      vals[#vals + 1] = v
    end
  end
  py.emit_values(vals, fmtv.data, fmtv.byteorder, fmtv.asciiprecision)
end
env.waitcomplete = function() end
env.delay = function(t) py.advance(t) end
env.reset = function() env.smua.reset() env.smub.reset() fmtv.data, fmtv.asciiprecision, fmtv.byteorder = 1, 6, 1 end

local function run(code, budget)
  local f, err = load(code, "=tsp", "t", env)
  if not f then return false, "syntax", err end
  sethook(function() error("instruction budget exhausted", 2) end, "", budget)
  local ok, e = pcall(f)
  sethook()
  if ok then return true end
  return false, "runtime", tostring(e)
end
return run, env
