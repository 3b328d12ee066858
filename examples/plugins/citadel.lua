-- A citadel-like ProGit plugin: `plan` runs `citadel plan --env devnet` as a
-- background job through jobwarden, shows its progress, and `cancel` stops
-- it. The host calls on_event with every job event (the wire format: a table
-- with `type`, `job_id` and `data`).

local plugin = {
  metadata = { name = "citadel", version = "0.1.0" },
  job = nil,
  percent = nil,
}

function plugin:on_load()
  print("[citadel] loaded; commands: plan, cancel")
end

function plugin:execute_command(command, args)
  if command == "plan" then
    local id, err = jobs.try_spawn{
      label = "citadel plan",
      binary = "citadel",
      args = { "plan", "--env", args.env or "devnet" },
      timeout_secs = 120,
    }
    if not id then
      print(("[citadel] refused by %s: %s (%s)"):format(err.rule, err.reason, err.hint))
      return false
    end
    self.job = id
    print("[citadel] started " .. id)
    return true
  elseif command == "cancel" and self.job then
    return jobs.cancel(self.job)
  end
  return false
end

function plugin:on_event(event)
  if event.job_id ~= self.job then return end
  local data = event.data
  if event.type == "job_progress" then
    if data.percent ~= jobs.null then self.percent = data.percent end
    print(("[citadel] %3s%%  %s"):format(self.percent or "?", data.step ~= jobs.null and data.step or ""))
  elseif event.type == "job_log_line" and data.stream ~= "system" then
    print("[citadel] | " .. data.line)
  elseif event.type == "job_completed" then
    print("[citadel] plan finished")
    self.job = nil
  elseif event.type == "job_failed" then
    print("[citadel] plan failed: " .. data.error)
    self.job = nil
  elseif event.type == "job_cancelled" then
    print("[citadel] plan cancelled: " .. data.reason)
    self.job = nil
  end
end

return plugin
