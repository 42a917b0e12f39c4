-- Who holds a lease, in any format (see holder.lua), and the fencing counter.
-- KEYS[1] lease key, KEYS[2] fencing counter. Returns {{type, pttl, fields}, counter}.
return {read_holder(KEYS[1]), read_counter(KEYS[2])}
