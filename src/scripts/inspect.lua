-- Who holds a lease, in any format (see holder.lua). KEYS[1] lease key.
return read_holder(KEYS[1])
