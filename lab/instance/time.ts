/** ServiceNow's REST date-time format, always UTC: `YYYY-MM-DD HH:MM:SS`. */
export function snowDateTime(date: Date): string {
  return date.toISOString().slice(0, 19).replace('T', ' ');
}

/** Epoch ms of a ServiceNow date-time, or undefined when the text is not one. */
export function parseSnowDateTime(text: string): number | undefined {
  if (!/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$/.test(text)) return undefined;
  const ms = Date.parse(`${text.replace(' ', 'T')}Z`);
  return Number.isNaN(ms) ? undefined : ms;
}
