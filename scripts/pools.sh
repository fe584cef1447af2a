# Sourced by scripts/cluster and scripts/soak: how many connections each
# process of a local cluster may open to PostgreSQL. The busy contexts get
# more, the quiet ones few: 94 in all for the seventeen context processes
# (the gateway opens none), under the server's default max_connections of
# 100 (at the default of 10 each they would pass it). Keep the sum in step
# when a context or a replica joins. MERCATO_STORE__MAX_CONNECTIONS, when
# set, is taken for every process instead.
pool_of() {
  if [ -n "${MERCATO_STORE__MAX_CONNECTIONS:-}" ]; then
    echo "$MERCATO_STORE__MAX_CONNECTIONS"
    return
  fi
  case "$1" in
    catalog) echo 12 ;;
    orders) echo 10 ;;
    cart | identity) echo 8 ;;
    inventory) echo 6 ;;
    payments) echo 5 ;;
    *) echo 3 ;;
  esac
}
