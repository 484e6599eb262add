package sqlstore

import (
	"context"
	"strings"
)

// DeleteFunc is a store's dialect of deleting one message: it removes the
// row of roomID whose id is id, comparing both byte for byte, and returns
// how many rows it removed.
type DeleteFunc func(ctx context.Context, roomID, id string) (int64, error)

// Delete is chat.Deleter's Delete, with del the store's statement. A row
// whose commit outcome is still unknown (see Doubt) is reported not
// found, as reads do not show it either; the undo loop removes it anyway.
// Ids are never reused after a deletion because every store numbers them
// from a sequence that does not go back (AUTOINCREMENT, a PostgreSQL
// sequence, a persistent AUTO_INCREMENT).
func (c *Core) Delete(ctx context.Context, roomID, id string, del DeleteFunc) (bool, error) {
	if err := c.readable(ctx); err != nil {
		return false, c.errorf("delete", err)
	}
	if id == "" || strings.IndexByte(id, 0) >= 0 || strings.IndexByte(roomID, 0) >= 0 || c.doubtful(id) {
		// NUL cannot be in a stored id or room (see chat.CheckMessage), and
		// PostgreSQL refuses it in a parameter: such an id names nothing.
		return false, nil
	}
	n, err := del(ctx, roomID, id)
	if err != nil {
		return false, c.errorf("delete", c.closedOr(err))
	}
	return n > 0, nil
}
