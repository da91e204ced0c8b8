import { describe, expect, it } from 'vitest';
import { parseIntegerListParam, parseIntegerParam } from './url-state';

describe('parameters read from a hand-edited address', () => {
  it('takes whole numbers and ignores anything else', () => {
    expect(parseIntegerParam('3')).toBe(3);
    expect(parseIntegerParam('-1')).toBe(-1);
    for (const bad of [null, '', '1.5', '1e3', 'NaN', '2147483648999', ' 3', '٣']) expect(parseIntegerParam(bad)).toBeUndefined();
  });

  it('reads a list sorted and without repeats, dropping what is not a number', () => {
    expect(parseIntegerListParam('5,1,3,1,x,')).toEqual([1, 3, 5]);
    expect(parseIntegerListParam('')).toEqual([]);
    expect(parseIntegerListParam(null)).toBeNull();
  });
});
