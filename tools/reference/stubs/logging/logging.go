package logging

import "context"

func ContextAttrs(ctx context.Context) []any { return nil }
