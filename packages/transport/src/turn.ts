/**
 * A function that runs `fn` once at the end of the current turn of the event loop, however
 * often it is called during the turn: what arrives in one turn is handled together.
 */
export function oncePerTurn(fn: () => void): () => void {
  let scheduled = false;
  return () => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(() => {
      scheduled = false;
      fn();
    });
  };
}
