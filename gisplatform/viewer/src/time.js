// The time slider: the first of each month from 2018-01-01 to this month, then "now".
// Instants are sent as local Fushun time (UTC+8), as the platform reads bare dates.
export const START = { y: 2018, m: 1 };

export function positions(now = new Date()) {
  const out = [];
  const cn = new Date(now.getTime() + 8 * 3600e3); // wall clock in UTC+8
  const endY = cn.getUTCFullYear(), endM = cn.getUTCMonth() + 1;
  for (let y = START.y, m = START.m; y < endY || (y === endY && m <= endM); m === 12 ? (y++, m = 1) : m++) {
    const date = `${y}-${String(m).padStart(2, "0")}-01`;
    out.push({ date, iso: `${date}T00:00:00+08:00`, epoch: Date.parse(`${date}T00:00:00+08:00`) / 1000 });
  }
  const today = cn.toISOString().slice(0, 10);
  out.push({ date: today, iso: null, now: true, get epoch() { return Date.now() / 1000; } });
  return out;
}

// The slider position of an instant (the month that contains it)
export function indexOf(list, isoOrEpoch) {
  const e = typeof isoOrEpoch === "number" ? isoOrEpoch : Date.parse(isoOrEpoch) / 1000;
  let best = 0;
  for (let i = 0; i < list.length - 1; i++) if (list[i].epoch <= e) best = i;
  return e >= Date.now() / 1000 ? list.length - 1 : best;
}
