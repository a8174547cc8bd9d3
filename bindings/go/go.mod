module github.com/promotion-gates/promotion-gates/bindings/go

go 1.25.0
