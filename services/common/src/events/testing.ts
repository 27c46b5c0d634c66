/**
 * Test helpers. Card numbers used in tests are built here at run time from a prefix plus a
 * computed Luhn check digit, so no full card number is ever written in the repository.
 */

function luhnCheckDigit(body: string): number {
  let sum = 0;
  // Doubling starts with the rightmost body digit, because the check digit will follow it.
  let double = true;
  for (let i = body.length - 1; i >= 0; i--) {
    let d = body.charCodeAt(i) - 48;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return (10 - (sum % 10)) % 10;
}

/** A Luhn-valid number of `length` digits starting with `prefix`, filled with `fill`. */
export function luhnNumber(prefix: string, length: number, fill = '1'): string {
  const body = (prefix + fill.repeat(length)).slice(0, length - 1);
  return body + String(luhnCheckDigit(body));
}

/** The same digits with the last one changed, so the Luhn check fails. */
export function breakLuhn(digits: string): string {
  const last = Number(digits.slice(-1));
  return digits.slice(0, -1) + String((last + 1) % 10);
}

/** Group digits for print, e.g. [4, 4, 4, 4] → '1234 5678 9012 3456'. */
export function groupDigits(digits: string, sizes: readonly number[], separator = ' '): string {
  const parts: string[] = [];
  let at = 0;
  for (const size of sizes) {
    parts.push(digits.slice(at, at + size));
    at += size;
  }
  if (at < digits.length) parts.push(digits.slice(at));
  return parts.join(separator);
}
